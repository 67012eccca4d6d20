"""Adobe's side: the AEM webhook, Adobe's signatures, event parsing and storing, the I/O Events
journal, and the clients of IMS, the Journaling API and the AEM Assets Author API."""
