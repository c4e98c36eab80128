"""``POST /orders/``: an order and its task, enqueued the way ``mode`` says, in one transaction.

``mode``: ``conn`` joins Django's transaction (``conn=connection``), ``on_commit`` enqueues after it commits;
``fail=1`` raises after the enqueue, so the transaction rolls back; ``task=ID`` names the task.
"""

from __future__ import annotations

from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from taskstore.contrib.django import enqueue_on_commit

from .models import Order
from .tasks import process, process_async


class Refused(Exception):
    pass


@csrf_exempt
@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    mode = request.POST.get("mode", "conn")
    task = process_async if request.POST.get("async") == "1" else process
    name = request.POST.get("task") or None
    with transaction.atomic():
        order = Order.objects.create(item=request.POST.get("item", "book"))
        if mode == "conn":
            task_id: str | None = task.options(id=name, conn=connection).enqueue_sync(order.pk).id
        else:
            enqueue_on_commit(task.options(id=name), order.pk)
            task_id = None
        if request.POST.get("fail") == "1":
            raise Refused("the order is refused after its task was enqueued")
    return JsonResponse({"order": order.pk, "task": task_id})
