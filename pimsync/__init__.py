"""pimsync: AEM Assets metadata kept in step with a PIM (README.md)."""

# The released version (CHANGELOG.md); `python manage.py version` prints it.
__version__ = "1.0.0"
