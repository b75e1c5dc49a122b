"""An example request and success answer for every operation of the API schema, keyed by operationId; the schema
hook (shitu_platform.openapi) places them, and tests/test_api_schema_examples.py checks each against its schema.

One module rather than `OpenApiExample`s in each api.py: most operations are standard viewset actions without a
decorator of their own, and one body (a gallery, a recognition) answers several operations, a list answer being
the same bodies in the page envelope, so each body is written once here. The values are what this product answers
(a drinks gallery, PP-ShiTuV2 timings and inliers); operations with a file upload get an example of their other
fields only, and 204 answers have no body to show. Errors an operation declares itself (a 409) get an example
envelope with its real code and message; the ones every operation shares are described, not shown."""
from __future__ import annotations

from typing import Any

from shitu_platform.errors import error_body

_CREATED = "2026-11-02T08:15:04.512301Z"
_UPDATED = "2026-12-06T21:40:17.093815Z"


def page(*results: dict[str, Any]) -> dict[str, Any]:
    """A list answer (limit/offset pagination) holding these rows: the whole list, so no next or previous page."""
    return {"count": len(results), "next": None, "previous": None, "results": list(results)}


TENANT = {"id": 3, "name": "Fresh Mart Shanghai", "slug": "fresh-mart-sh", "role": "member", "created_at": _CREATED}

API_KEY = {
    "id": 14, "name": "ios-app-prod", "prefix": "9f3ac1d07b2e", "role": "member", "created_at": "2026-11-20T09:02:44.118870Z",
    "last_used_at": "2026-12-07T05:12:09.551023Z", "revoked_at": None, "is_active": True,
}
MEMBER = {"id": 5, "username": "li.wei", "role": "admin", "created_at": _CREATED}

GALLERY = {
    "id": 12, "name": "Drinks fridge", "description": "cans and bottles of the chilled aisle", "detect_references": True,
    "index_version": 41, "index_updated_at": _UPDATED, "product_count": 53, "image_count": 266, "created_at": _CREATED,
}
PRODUCT = {
    "id": 208, "gallery": 12, "label": "可口可乐 330ml", "sku": "6928804011142", "display_name": "Coca-Cola 330 ml can",
    "attributes": {"brand": "可口可乐", "size": "330ml"}, "image_count": 5, "created_at": _CREATED,
}
REFERENCE_IMAGE = {
    "id": 1577, "gallery": 12, "product": 208,
    "checksum": "3b7e0c5a9f1d24e86c0b4f7a2d9e1c83f5a6b0d2e4c7f9a1b3d5e7f9a0c2e4b6", "size_bytes": 48213,
    "width": 640, "height": 853, "bbox": [112, 64, 508, 790], "status": "ready", "failure_reason": "",
    "created_at": "2026-11-02T08:21:37.004518Z",
}
IMPORT_QUEUED = {
    "id": 9, "gallery": 12, "archive_name": "drinks-catalogue.zip", "status": "queued", "progress": 0.0, "total_rows": 0,
    "next_row": 0, "imported": 0, "skipped": 0, "failed": 0, "row_errors": [], "failure_reason": "", "attempts": 0,
    "created_at": "2026-12-06T21:38:02.210447Z", "finished_at": None,
}
IMPORT_DONE = {
    **IMPORT_QUEUED, "status": "done", "progress": 1.0, "total_rows": 266, "next_row": 266, "imported": 263,
    "skipped": 2, "failed": 1, "attempts": 1, "finished_at": "2026-12-06T21:40:17.093815Z",
    "row_errors": [{"row": 118, "path": "p41/2.jpg", "code": "missing_file", "message": "p41/2.jpg is listed but not in the zip"}],
}
HEALTH = {
    "gallery": 12, "status": "done", "stale": False, "model_key": "shitu-rec-lite0-dd53@1", "index_version": 41,
    "requested_at": "2026-12-06T21:40:17.310228Z", "computed_at": "2026-12-06T21:40:19.842106Z", "failure_reason": "",
    "report": {
        "model_key": "shitu-rec-lite0-dd53@1", "index_version": 41, "images": 266, "products": 53,
        "params": {"neighbours": 10, "near_duplicate_cosine": 0.85, "min_references": 3, "min_inliers": 15,
                   "verify_siblings": 10},
        "counts": {"confusable_pairs": 1, "near_duplicates": 1, "few_references": 1, "unverified_references": 0},
        "confusable_pairs": [{"product_a": 208, "product_b": 211, "mutual_pairs": 3, "cosine": 0.7412}],
        "near_duplicates": [{"image_a": 1577, "product_a": 208, "image_b": 1602, "product_b": 211, "cosine": 0.9361}],
        "few_references": [{"product": 240, "references": 2}],
        "unverified_references": [],
        "timings_ms": {"load": 38.2, "knn": 4.9, "verify": 1873.5, "total": 1916.6},
    },
}

_COKE_MATCH = {"product_id": 208, "label": "可口可乐 330ml", "display_name": "Coca-Cola 330 ml can", "score": 0.8412,
               "reference_image_id": 1577, "inliers": 64}
_ZERO_MATCH = {"product_id": 211, "label": "可口可乐零度 330ml", "display_name": "Coca-Cola Zero 330 ml can",
               "score": 0.6299, "reference_image_id": 1602, "inliers": 9}
_PARAMS = {
    "max_det_results": 5, "det_threshold": 0.2, "add_whole_image": True, "top_k": 5, "score_threshold": 0.5,
    "nms_iou": 0.05, "min_confidence": None, "verify": True, "verify_top_k": 50, "min_inliers": 15,
    "local_features": 500, "local_long_side": 480, "always_verify_whole_image": True, "whole_image_cover": 0.85,
    "main_object_zoom": 1.2,
}
_RECOGNITION_ID = "5d0c8a3e-7b41-4f2a-9c6e-1e8f2b7d4a90"
RECOGNITION_QUEUED = {
    "id": _RECOGNITION_ID, "url": f"/api/v1/recognitions/{_RECOGNITION_ID}/", "status": "queued", "gallery": 12,
    "image_width": 1080, "image_height": 1440, "params": _PARAMS, "filter": "brand=可口可乐", "no_match": False,
    "objects": [], "failure_code": "", "failure_reason": "", "model_key": "", "index_version": None, "timings_ms": {},
    "created_at": "2026-12-07T05:12:09.604117Z", "finished_at": None,
    "webhook": {"url": "https://pos.example.com/hooks/shitu", "status": "pending", "attempts": 0, "last_error": "",
                "delivered_at": None, "log": []},
}
RECOGNITION_DONE = {
    **RECOGNITION_QUEUED, "status": "done", "model_key": "shitu-rec-lite0-dd53@1", "index_version": 41,
    "finished_at": "2026-12-07T05:12:09.901563Z",
    "objects": [{
        "bbox": [312.4, 188.0, 645.9, 1021.7], "whole_image": False, "det_score": 0.8731, "product": 208,
        "label": "可口可乐 330ml", "display_name": "Coca-Cola 330 ml can", "score": 0.8412, "confidence": 0.9931,
        "inliers": 64, "margin": 0.2113, "reference_image": 1577,
        "matches": [{**_COKE_MATCH, "accepted": True}, {**_ZERO_MATCH, "accepted": False}],
    }],
    "timings_ms": {"detect_ms": 41.0, "extract_ms": 63.5, "search_ms": 0.6, "total_ms": 118.4, "verify_ms": 12.3,
                   "queue_ms": 4.2, "search_source": "faiss"},
    "webhook": {"url": "https://pos.example.com/hooks/shitu", "status": "delivered", "attempts": 1, "last_error": "",
                "delivered_at": "2026-12-07T05:12:10.122480Z",
                "log": [{"attempt": 1, "at": "2026-12-07T05:12:10.122480Z", "status_code": 200, "outcome": "delivered",
                         "error": ""}]},
}
REVIEW = {
    "id": 57, "reason": "flagged", "verdict": "wrong", "suggested_product": 211, "status": "open",
    "resolved_product": None, "new_reference_image": None, "created_at": "2026-12-07T05:14:31.287690Z", "reviewed_at": None,
}

DEFAULT_FINE_TUNE = {"id": 7, "key": "ft-t3-j12@1", "kind": "extractor", "scope": "tenant", "metrics": {}, "parent": None,
                     "created_at": "2026-11-28T14:03:55.640912Z"}
SECOND_FINE_TUNE = {"id": 9, "key": "ft-t3-j15@1", "kind": "extractor", "scope": "tenant", "metrics": {}, "parent": 7,
                    "created_at": "2026-12-05T10:47:12.318804Z"}
_METRICS_BEFORE = {"recall@1": 0.9123, "recall@5": 0.9649, "mAP": 0.7418, "queries": 57, "queries_without_match": 0}
_METRICS_AFTER = {"recall@1": 0.9474, "recall@5": 0.9825, "mAP": 0.7936, "queries": 57, "queries_without_match": 0}
FINE_TUNE_QUEUED = {
    "id": 15, "gallery": 12, "state": "queued", "mode": "fast", "progress": 0.0, "epochs": 80, "current_epoch": 0,
    "current_step": 0, "total_steps": 0, "loss_history": [], "base_model": 7, "result_model": None,
    "metrics_before": {}, "metrics_after": {}, "log": "", "failure_reason": "", "cancel_requested": False,
    "created_at": "2026-12-05T10:21:40.552019Z", "finished_at": None,
}
FINE_TUNE_READY = {
    **FINE_TUNE_QUEUED, "state": "ready", "progress": 1.0, "current_epoch": 80, "current_step": 1360, "total_steps": 1360,
    "loss_history": [{"step": 1350, "loss": 1.2874, "ce": 1.1032, "triplet": 0.1842, "lr": 0.0005},
                     {"step": 1360, "loss": 1.2791, "ce": 1.0987, "triplet": 0.1804, "lr": 0.0005}],
    "result_model": 9, "metrics_before": _METRICS_BEFORE, "metrics_after": _METRICS_AFTER,
    "log": "10:47:12 held-out mAP 0.7418 -> 0.7936, recall@1 0.9123 -> 0.9474\n",
    "finished_at": "2026-12-05T10:47:13.004771Z",
}

# operationId -> {"request": JSON body example, "<status>": answer example}
EXAMPLES: dict[str, dict[str, Any]] = {
    "tenant_retrieve": {"200": TENANT},
    "api_keys_list": {"200": page(API_KEY)},
    "api_keys_create": {"request": {"name": "ios-app-prod", "role": "member"},
                        "201": {**API_KEY, "last_used_at": None, "key": "shitu_9f3ac1d07b2eQx7vJ2mKc0Rr8tYwZp4LhN1sUe6aDg3bFi5oVk9"}},
    "api_keys_retrieve": {"200": API_KEY},
    "api_keys_revoke_create": {"200": {**API_KEY, "revoked_at": "2026-12-07T05:20:00.000000Z", "is_active": False}},
    "members_list": {"200": page(MEMBER)},
    "members_retrieve": {"200": MEMBER},
    "galleries_list": {"200": page(GALLERY)},
    "galleries_create": {"request": {"name": "Drinks fridge", "description": "cans and bottles of the chilled aisle",
                                     "detect_references": True},
                         "201": {**GALLERY, "index_version": 0, "index_updated_at": None, "product_count": 0, "image_count": 0}},
    "galleries_retrieve": {"200": GALLERY},
    "galleries_update": {"request": {"name": "Drinks fridge", "description": "aisle 3, chilled", "detect_references": True},
                         "200": {**GALLERY, "description": "aisle 3, chilled"}},
    "galleries_partial_update": {"request": {"description": "aisle 3, chilled"}, "200": {**GALLERY, "description": "aisle 3, chilled"}},
    "galleries_health_retrieve": {"200": HEALTH},
    "galleries_imports_create": {"202": IMPORT_QUEUED},
    "galleries_purge_create": {"request": {"filter": "brand=可口可乐 AND season=2023", "force": False},
                               "200": {"filter": "brand=可口可乐 AND season=2023", "products": 4, "images": 19, "deleted": False}},
    "imports_list": {"200": page(IMPORT_DONE)},
    "imports_retrieve": {"200": IMPORT_DONE},
    "products_list": {"200": page(PRODUCT)},
    "products_create": {"request": {"gallery": 12, "label": "可口可乐 330ml", "sku": "6928804011142",
                                    "display_name": "Coca-Cola 330 ml can", "attributes": {"brand": "可口可乐", "size": "330ml"}},
                        "201": {**PRODUCT, "image_count": 0}},
    "products_retrieve": {"200": PRODUCT},
    "products_update": {"request": {"gallery": 12, "label": "可口可乐 330ml", "sku": "6928804011142",
                                    "display_name": "Coca-Cola Original 330 ml can", "attributes": {"brand": "可口可乐", "size": "330ml"}},
                        "200": {**PRODUCT, "display_name": "Coca-Cola Original 330 ml can"}},
    "products_partial_update": {"request": {"attributes": {"brand": "可口可乐", "size": "330ml", "season": "2024"}},
                                "200": {**PRODUCT, "attributes": {"brand": "可口可乐", "size": "330ml", "season": "2024"}}},
    "products_images_create": {"request": {"bbox": [112, 64, 508, 790]}, "201": [{**REFERENCE_IMAGE, "status": "pending"}]},
    "reference_images_list": {"200": page(REFERENCE_IMAGE)},
    "reference_images_retrieve": {"200": REFERENCE_IMAGE},
    "reference_images_move_create": {"request": {"product": 211}, "200": {**REFERENCE_IMAGE, "product": 211}},
    "recognitions_list": {"200": page(RECOGNITION_DONE)},
    "recognitions_create": {"request": {"gallery": 12, "top_k": 5, "filter": "brand=可口可乐", "run_async": False,
                                        "webhook_url": "https://pos.example.com/hooks/shitu"},
                            "200": RECOGNITION_DONE, "202": RECOGNITION_QUEUED},
    "recognitions_retrieve": {"200": RECOGNITION_DONE},
    "recognitions_feedback_create": {"request": {"object": 0, "verdict": "wrong", "product": 211},
                                     "201": REVIEW, "200": REVIEW},
    "fine_tune_jobs_list": {"200": page(FINE_TUNE_READY)},
    "fine_tune_jobs_create": {"request": {"gallery": 12, "mode": "fast", "epochs": 80}, "202": FINE_TUNE_QUEUED,
                              "409": error_body("job_already_running", "this tenant already has a fine-tuning job "
                                                                       "running; wait for it or cancel it")},
    "fine_tune_jobs_retrieve": {"200": FINE_TUNE_READY},
    "fine_tune_jobs_cancel_create": {"200": {**FINE_TUNE_QUEUED, "state": "training", "progress": 0.42, "current_epoch": 34,
                                             "current_step": 578, "total_steps": 1360, "cancel_requested": True},
                                     "409": error_body("invalid_job_state", "the job is already cancelled")},
    "fine_tune_jobs_promote_create": {"request": {"force": False}, "202": {**FINE_TUNE_READY, "state": "reembedding"},
                                      "409": error_body("invalid_job_state", "the new model is not better on the "
                                                                             "held-out images; staff may force it")},
    "models_list": {"200": page(SECOND_FINE_TUNE, DEFAULT_FINE_TUNE)},
    "models_active_retrieve": {"200": {"extractor": SECOND_FINE_TUNE, "previous_extractor": DEFAULT_FINE_TUNE,
                                       "previous_is_default": False, "switched_at": "2026-12-05T11:02:48.771305Z"}},
    "models_rollback_create": {"200": {"extractor": DEFAULT_FINE_TUNE, "previous_extractor": SECOND_FINE_TUNE,
                                       "previous_is_default": False, "switched_at": "2026-12-07T05:25:13.442960Z"},
                               "409": error_body("invalid_job_state", "there is no previous model to roll back to")},
}
