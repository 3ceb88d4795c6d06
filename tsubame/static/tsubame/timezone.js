// Tells the server the browser's time zone (accounts.timezones), for people who did not
// choose one: from the next page on, times are shown in it.
(function () {
  "use strict";
  let zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (error) {
    return;
  }
  // Zone names are cookie-safe as they are; anything else is not a zone name.
  if (!zone || !/^[A-Za-z0-9_+\/-]+$/.test(zone)) return;
  const cookie = `tsubame_tz=${zone}`;
  if (document.cookie.split("; ").includes(cookie)) return;
  const secure = location.protocol === "https:" ? "; secure" : "";
  document.cookie = `${cookie}; path=/; max-age=31536000; samesite=lax${secure}`;
})();
