"""Template filters of the mapping page's rule table (see templates/admin/pimsync/mappingconfig/rules_inline.html)."""

from django import template

register = template.Library()


@register.filter
def rule_fields(inline_admin_form) -> dict:
    """The row's admin fields by name, editable or read-only alike, so the template can put
    several in one cell (the source, the conditions) instead of one column each."""
    fields = {}
    for fieldset in inline_admin_form:
        for line in fieldset:
            for admin_field in line:
                name = admin_field.field["name"] if isinstance(admin_field.field, dict) else admin_field.field.name
                fields[name] = admin_field
    return fields
