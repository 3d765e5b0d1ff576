/* Newsroom's first-party audience measurement. consentkit runs it only once the visitor
   allows Statistics: it counts visits in the nr_visits cookie and reports the page view. */
(function () {
  "use strict";
  var found = document.cookie.match(/(?:^|;\s*)nr_visits=(\d+)/);
  var visits = (found ? parseInt(found[1], 10) : 0) + 1;
  // 13 months, the longest the CNIL allows for an audience-measurement cookie.
  document.cookie = "nr_visits=" + visits + "; Max-Age=34128000; Path=/; SameSite=Lax";
  var out = document.getElementById("nr-visits");
  if (out) {
    out.textContent = String(visits);
  }
  var script = document.currentScript;
  var endpoint = (script && script.getAttribute("data-endpoint")) || "/stats/hit";
  if (window.fetch) {
    fetch(endpoint, { method: "POST", credentials: "same-origin", keepalive: true }).catch(
      function () {}
    );
  }
})();
