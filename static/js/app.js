/* What every page needs besides htmx: the current tab in view on a narrow screen, and no
   stale figures when the browser shows a page from its back/forward cache. The CSP allows
   no inline script, hence this file. */
(function () {
  "use strict";

  // On a phone the tabs scroll sideways: without this, "Activity" is off to the right.
  function showCurrentTab() {
    var current = document.querySelector('.page-nav a[aria-current="page"]');
    if (current === null) {
      return;
    }
    var list = current.closest("ul");
    var tab = current.getBoundingClientRect();
    var box = list.getBoundingClientRect();
    if (tab.left < box.left || tab.right > box.right) {
      list.scrollLeft += tab.left - box.left - (box.width - tab.width) / 2;
    }
  }

  // A page restored from the back/forward cache shows what it showed when left: after a
  // top-up, the old balance. Loading it again shows the figures as they are now.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) {
      window.location.reload();
    }
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", showCurrentTab);
  } else {
    showCurrentTab();
  }
})();
