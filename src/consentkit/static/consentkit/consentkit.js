/* consentkit: progressive enhancement only; every control works without this file. */
(function () {
  "use strict";
})();
