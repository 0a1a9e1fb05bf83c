/* Refreshes the parts of a djworker admin page from its JSON endpoint, without reloading.
   The element with data-refresh-url names the endpoint; each key of the answer's "html"
   replaces the element whose id is "dw-" + key. Nothing is fetched from anywhere else. */
(function () {
  var root = document.querySelector("[data-refresh-url]");
  if (!root) { return; }
  var url = root.getAttribute("data-refresh-url");
  var interval = parseInt(root.getAttribute("data-refresh-interval-ms"), 10) || 3000;
  var status = document.getElementById("dw-refreshed");
  function refresh() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        Object.keys(data.html || {}).forEach(function (key) {
          var part = document.getElementById("dw-" + key);
          if (part) { part.innerHTML = data.html[key]; }
        });
        if (status) {
          status.textContent = "As of " + data.generated_at + ".";
          status.setAttribute("data-generated-at", data.generated_at);
          status.parentNode.classList.remove("dw-failed");
        }
      })
      .catch(function (error) {
        if (status) {
          status.textContent = "Refresh failed (" + error.message + "); retrying.";
          status.parentNode.classList.add("dw-failed");
        }
      })
      .then(function () { window.setTimeout(refresh, interval); });
  }
  window.setTimeout(refresh, interval);
})();
