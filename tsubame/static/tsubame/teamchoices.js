// Checkbox lists of a team's things in a form with a team select, such as the job form's
// secret variables (`data-team-select` on the list, `data-team` on each item): only the
// chosen team's are offered, and another team's are let go when the team changes, since
// the form would refuse them. targets.js does the same for the server picker.
(function () {
  "use strict";
  document.querySelectorAll(".team-choices[data-team-select]").forEach((list) => {
    const select = document.getElementById(list.dataset.teamSelect);
    if (!select) return;
    const items = [...list.querySelectorAll("li[data-team]")];
    const none = list.parentElement.querySelector(".team-choices-none");
    const update = () => {
      let shown = 0;
      for (const item of items) {
        const ofTeam = !select.value || item.dataset.team === select.value;
        item.hidden = !ofTeam;
        if (ofTeam) shown += 1;
        else item.querySelector("input").checked = false;
      }
      if (none) none.hidden = shown > 0 || items.length === 0;
    };
    select.addEventListener("change", update);
    update();
  });
})();
