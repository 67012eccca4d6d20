"""Alerts: the conditions that open and resolve them, and the channels their messages go out on."""
