"""Date and time formats for the dashboard (settings.FORMAT_MODULE_PATH): one format on every
page, the zone always named."""
