"""Template filters of the mapping page's rule table (see templates/admin/pimsync/mappingconfig/rules_inline.html)."""

from django import template

register = template.Library()

# Read-only rows (a Viewer's page) leave these out when they are empty, so each row shows its one
# source and only the conditions it has.
OPTIONAL = ("pim_field", "attribute", "locale", "channel", "currency", "option_codes", "path_glob", "mime_glob")


@register.filter
def rule_fields(inline_admin_form) -> dict:
    """The row's admin fields by name, editable or read-only alike, so the template can put
    several in one cell (the source, the conditions) instead of one column each."""
    fields = {}
    for fieldset in inline_admin_form:
        for line in fieldset:
            for admin_field in line:
                name = admin_field.field["name"] if isinstance(admin_field.field, dict) else admin_field.field.name
                if admin_field.is_readonly and name in OPTIONAL and not getattr(inline_admin_form.original, name, ""):
                    continue
                fields[name] = admin_field
    return fields
