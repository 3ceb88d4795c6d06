// Starts Swagger UI on /api/v1/docs/ (templates/drf_spectacular/swagger_ui.html), from a
// static file because the Content-Security-Policy allows no inline script.
"use strict";

(() => {
  const root = document.getElementById("swagger-ui");
  const { schemaUrl, settings, csrfHeader, csrfToken } = root.dataset;
  window.ui = SwaggerUIBundle({
    url: schemaUrl,
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // "Try it out" with the browser's session: Django wants the CSRF token on a change.
    requestInterceptor: (request) => {
      if (!["GET", undefined].includes(request.method) && request.credentials === "same-origin") {
        request.headers[csrfHeader] = csrfToken;
      }
      return request;
    },
    ...JSON.parse(settings),
  });
})();
