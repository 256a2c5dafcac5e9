// The storefront's only script: the live quote on the redeem page and copy buttons.
// Every page works without it; it calls the storefront's own /api/quote, never ecommerce.
(function () {
  "use strict";

  function show(element, text) {
    if (!element) { return; }
    element.textContent = text || "";
    element.hidden = !text;
  }

  function liveQuote(form) {
    var quantity = form.querySelector("#quantity");
    var expected = form.querySelector("#expected-points");
    var quoted = form.querySelector("#quoted-quantity");
    var panel = document.getElementById("quote");
    var error = document.getElementById("quantity-error");
    var cardError = document.getElementById("card-error");
    var formError = document.getElementById("form-error");
    var redeem = document.getElementById("redeem-button");
    var timer = null;
    var asked = 0;

    document.querySelectorAll(".js-only").forEach(function (e) { e.hidden = false; });

    function render(data) {
      if (!data.ok) {
        if (data.signed_out) { window.location.assign("/sign-in?ended=1"); return; }
        expected.value = "";
        quoted.value = "";
        panel.hidden = true;
        if (data.field === "quantity") {
          show(error, data.message);
          quantity.setAttribute("aria-invalid", "true");
        } else {
          show(formError, data.message);
        }
        return;
      }
      show(error, "");
      show(formError, "");
      quantity.removeAttribute("aria-invalid");
      expected.value = String(data.expected_points);
      quoted.value = String(data.quantity);
      document.getElementById("quote-points").textContent = data.points_required;
      document.getElementById("quote-face").textContent = data.face_value_total;
      document.getElementById("quote-ratio").textContent = data.ratio;
      var linked = data.available !== null;
      document.getElementById("quote-available-row").hidden = !linked;
      document.getElementById("quote-after-row").hidden = !linked;
      document.getElementById("quote-available").textContent = data.available || "";
      var after = document.getElementById("quote-after");
      after.textContent = data.points_after || data.short || "";
      after.className = data.short ? "short" : "";
      if (data.card_error && cardError) { show(cardError, data.card_error); }
      panel.hidden = false;
    }

    function update() {
      var n = quantity.value.trim();
      var mine = ++asked;
      var url = form.dataset.quoteUrl + "?" + new URLSearchParams({
        product_id: form.dataset.product, quantity: n
      }).toString();
      fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.json(); })
        .then(function (data) { if (mine === asked) { render(data); } })
        .catch(function () { /* the Quote button still works */ });
    }

    function soon() {
      window.clearTimeout(timer);
      timer = window.setTimeout(update, 200);
    }

    quantity.addEventListener("input", soon);
    quantity.addEventListener("change", soon);
    document.getElementById("quote-button").addEventListener("click", function (event) {
      event.preventDefault();
      update();
    });
    form.querySelectorAll("[data-quantity]").forEach(function (preset) {
      preset.addEventListener("click", function (event) {
        event.preventDefault();
        quantity.value = preset.dataset.quantity;
        update();
        quantity.focus();
      });
    });
    quantity.addEventListener("keydown", function (event) {
      // Enter in the field asks for a quote rather than redeeming an unseen one.
      if (event.key === "Enter") { event.preventDefault(); update(); }
    });
    form.addEventListener("submit", function () {
      // The request id makes a second submission harmless; this only saves the trip.
      window.setTimeout(function () { redeem.disabled = true; redeem.setAttribute("aria-busy", "true"); }, 0);
    });
  }

  function copyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      if (!navigator.clipboard) { return; }
      button.hidden = false;
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(button.dataset.copy).then(function () {
          var label = button.textContent;
          button.textContent = button.dataset.copied;
          window.setTimeout(function () { button.textContent = label; }, 1500);
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("redeem-form");
    if (form) { liveQuote(form); }
    copyButtons();
  });
})();
