// taskstore dashboard: the few behaviours that need script, without inline handlers (the pages' CSP forbids them).
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
