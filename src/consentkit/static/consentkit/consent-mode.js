/* consentkit: Google Consent Mode v2 defaults from the stored choice. Loaded synchronously
   by consentkit_head(), before any Google tag; reads the JSON in #consentkit-config. */
(function (w, d) {
  "use strict";
  var el = d.getElementById("consentkit-config");
  var granted = [];
  try {
    granted = JSON.parse(el.textContent).state.granted || [];
  } catch (e) {
    /* no or unreadable config: everything optional stays denied */
  }
  function v(category) {
    return granted.indexOf(category) >= 0 ? "granted" : "denied";
  }
  w.dataLayer = w.dataLayer || [];
  if (typeof w.gtag !== "function") {
    /* Google's snippet: the tag expects the arguments object itself. */
    w.gtag = function () {
      w.dataLayer.push(arguments);
    };
  }
  w.gtag("consent", "default", {
    ad_storage: v("marketing"),
    ad_user_data: v("marketing"),
    ad_personalization: v("marketing"),
    analytics_storage: v("statistics"),
    personalization_storage: v("preferences"),
    functionality_storage: "granted",
    security_storage: "granted"
  });
})(window, document);
