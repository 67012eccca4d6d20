/* The mapping page: show an attribute rule's locale, channel, currency and option-code inputs
   only where the chosen attribute uses them, and the field picker (a sample product as a tree
   whose values fill a rule's source). Plain DOM, no framework; the page works without it. */
"use strict";
(function () {
  const PRICE = "pim_catalog_price_collection";
  const SELECTS = ["pim_catalog_simpleselect", "pim_catalog_multiselect"];
  let details = {};
  let target = null;

  function rows() {
    return Array.from(document.querySelectorAll("#rules-table tbody tr.form-row:not(.empty-form)"));
  }

  function input(row, name) {
    return row.querySelector("[name$='-" + name + "']");
  }

  function show(row, name, visible) {
    const box = row.querySelector(".rule-" + name);
    if (box) box.hidden = !visible;
  }

  // Which attribute details this row needs: all of them when the attribute is not in the PIM's
  // list (or there is no list), none for a JMESPath rule; a detail holding a value always shows.
  function refresh(row) {
    const attribute = input(row, "attribute");
    if (!attribute) return;
    const code = attribute.value.trim();
    const meta = details[code];
    const wants = {
      locale: code !== "" && (!meta || meta.localizable),
      channel: code !== "" && (!meta || meta.scopable),
      currency: code !== "" && (!meta || meta.type === PRICE),
      option_codes: code !== "" && (!meta || SELECTS.includes(meta.type)),
    };
    for (const name of Object.keys(wants)) {
      const field = input(row, name);
      const holds = field && (field.type === "checkbox" ? field.checked : field.value !== "");
      show(row, name, wants[name] || holds);
    }
  }

  // A rule's number as the table's "#" column shows it: its position, or for a new rule the
  // greyed number it will get when saved (it goes last).
  function number(row) {
    const box = input(row, "position");
    return box ? box.value.trim() || box.placeholder : String(rows().indexOf(row) + 1);
  }

  // Rows added with "Add another" come after every numbered rule and each other.
  function numberNew(row) {
    const box = input(row, "position");
    if (!box) return;
    const taken = rows()
      .filter((other) => other !== row)
      .map((other) => Number(number(other)))
      .filter((n) => Number.isFinite(n));
    box.placeholder = String(Math.max(0, ...taken) + 1);
  }

  function choose(row) {
    if (target) target.classList.remove("pick-target");
    target = row;
    row.classList.add("pick-target");
    document.getElementById("picker-target").textContent = "Values go into rule " + number(row) + ".";
  }

  function targetRow() {
    if (target && target.isConnected && !target.classList.contains("empty-form")) return target;
    const empty = rows().find((row) => !input(row, "pim_field").value && !(input(row, "attribute") || {}).value);
    if (empty) choose(empty);
    return empty || null;
  }

  function set(field, value) {
    if (!field) return;
    if (field.type === "checkbox") field.checked = Boolean(value);
    else {
      if (field.tagName === "SELECT" && value && !Array.from(field.options).some((o) => o.value === value)) {
        field.add(new Option(value + " (not in the PIM's list)", value));
      }
      field.value = value;
    }
    field.dispatchEvent(new Event("change", { bubbles: true }));
  }

  function fill(node) {
    const row = targetRow();
    const message = document.getElementById("picker-message");
    if (!row) {
      message.textContent = "Click into a rule first (or add one), then pick a value.";
      return;
    }
    const attribute = input(row, "attribute");
    if (node.rule && attribute) {
      set(input(row, "pim_field"), "");
      set(attribute, node.rule.attribute);
      set(input(row, "locale"), node.rule.locale);
      set(input(row, "channel"), node.rule.channel);
      // A currency or option codes chosen for the row's previous attribute mean nothing for this one.
      set(input(row, "currency"), "");
      set(input(row, "option_codes"), false);
      message.textContent = "Rule " + number(row) + " reads the attribute " + node.rule.attribute + ".";
    } else {
      for (const name of ["attribute", "locale", "channel", "currency", "option_codes"]) set(input(row, name), "");
      set(input(row, "pim_field"), node.path);
      message.textContent = "Rule " + number(row) + " reads " + node.path + ".";
    }
    refresh(row);
  }

  function pickButton(node, text) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "pick";
    button.textContent = text;
    button.title = node.rule ? "attribute " + node.rule.attribute : node.path;
    button.addEventListener("click", (event) => {
      event.preventDefault();
      fill(node);
    });
    return button;
  }

  function render(nodes, depth) {
    const list = document.createElement("ul");
    list.className = "picker-list";
    for (const node of nodes) {
      const item = document.createElement("li");
      if (node.children) {
        const box = document.createElement("details");
        box.open = depth === 0;
        const summary = document.createElement("summary");
        summary.textContent = node.name + " ";
        if (node.path) summary.appendChild(pickButton(node, "use"));
        box.append(summary, render(node.children, depth + 1));
        item.appendChild(box);
      } else {
        const name = document.createElement("span");
        name.className = "picker-name";
        name.textContent = node.name + ": ";
        item.appendChild(name);
        item.appendChild(node.path ? pickButton(node, node.value) : document.createTextNode(node.value));
      }
      list.appendChild(item);
    }
    return list;
  }

  async function load() {
    const box = document.getElementById("picker-box");
    const key = document.getElementById("picker-key").value.trim();
    const message = document.getElementById("picker-message");
    const tree = document.getElementById("picker-tree");
    message.textContent = "Loading…";
    tree.replaceChildren();
    try {
      const response = await fetch(box.dataset.url + "?key=" + encodeURIComponent(key), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      const body = await response.json();
      if (!response.ok) {
        message.textContent = body.error || "The picker failed (HTTP " + response.status + ").";
        return;
      }
      message.textContent = "Fields of " + body.key + ": click a value to use it.";
      tree.appendChild(render(body.fields, 0));
    } catch (error) {
      message.textContent = "The picker could not be loaded: " + error.message;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const data = document.getElementById("akeneo-attributes");
    details = data ? JSON.parse(data.textContent) : {};
    rows().forEach(refresh);
    document.addEventListener("change", (event) => {
      const row = event.target.closest && event.target.closest("#rules-table tr.form-row");
      if (row && /-attribute$/.test(event.target.name || "")) refresh(row);
    });
    // Django's inlines.js announces a row added with "Add another mapping rule".
    document.addEventListener("formset:added", (event) => {
      numberNew(event.target);
      refresh(event.target);
    });
    // Enter in a field submits the form with its first submit button, which is Preview (it comes
    // first on the page) and opens a preview of nothing; make it do what the main button does
    // (Save), or, in the preview's own fields, Preview.
    const form = document.getElementById("mappingconfig_form");
    if (form) {
      form.addEventListener("keydown", (event) => {
        const field = event.target;
        if (event.key !== "Enter" || event.defaultPrevented || event.isComposing) return;
        if (field.tagName !== "INPUT" || ["submit", "button", "reset", "file"].includes(field.type)) return;
        const inPreview = field.closest("#preview-box");
        const button = inPreview ? document.getElementById("preview-button") : form.querySelector("[name='_save']");
        if (!button) return;
        event.preventDefault();
        form.requestSubmit(button);
      });
    }
    document.addEventListener("focusin", (event) => {
      const row = event.target.closest && event.target.closest("#rules-table tr.form-row");
      if (row && !row.classList.contains("empty-form")) choose(row);
    });
    const button = document.getElementById("picker-load");
    if (!button) return;
    button.addEventListener("click", load);
    document.getElementById("picker-key").addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault(); // Enter would submit the rules form
        load();
      }
    });
  });
})();
