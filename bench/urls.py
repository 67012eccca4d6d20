from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from pimsync.urls import urlpatterns as pimsync_urls


@csrf_exempt
def noop(request):
    """A trivial view on the same gunicorn: what Django itself costs per request."""
    return HttpResponse(b'{"ok": true}', content_type="application/json")


urlpatterns = [path("bench/noop", noop), *pimsync_urls]
