// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";

  // A live "characters left" count under text areas that declare data-counter.
  function addCounter(textarea) {
    var max = parseInt(textarea.getAttribute("data-counter"), 10);
    if (!max) { return; }
    var counter = document.createElement("p");
    counter.className = "counter";
    counter.id = textarea.id + "_counter";
    textarea.insertAdjacentElement("afterend", counter);
    function update() {
      var left = max - textarea.value.length;
      counter.textContent = left + " / " + max;
    }
    textarea.addEventListener("input", update);
    update();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var areas = document.querySelectorAll("textarea[data-counter]");
    for (var i = 0; i < areas.length; i += 1) { addCounter(areas[i]); }
  });
})();
