"""The one way out: the HTTP base every client uses, shared access tokens, and the pauses a 429 sets."""
