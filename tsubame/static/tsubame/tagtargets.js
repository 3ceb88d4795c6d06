// The run dialog's tags (jobs/tag_targets.html): the servers the ticked tags take, as the
// ticks change. Without this script the list stays as the page's first ticks made it.
(function () {
  "use strict";
  const box = document.getElementById("run-tags");
  if (!box) return;
  const servers = [...box.querySelectorAll(".tag-servers li[data-tags]")];
  const none = box.querySelector(".tag-servers-none");

  const update = () => {
    const ticked = new Set([...box.querySelectorAll("input[name=tags]:checked")].map((input) => input.value));
    let taken = 0;
    for (const server of servers) {
      const takes = server.dataset.tags.split(/\s+/).some((tag) => ticked.has(tag));
      server.hidden = !takes;
      if (takes) taken += 1;
    }
    none.hidden = taken > 0;
  };
  box.addEventListener("change", update);
  update();
})();
