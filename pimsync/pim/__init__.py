"""The PIM's side: the connectors (rest, demo, Akeneo), the PIM and Akeneo webhooks, change
notifications, the poll of changed products, the write-back of asset links, attribute values."""
