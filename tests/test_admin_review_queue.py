"""Staff's review queue in the admin: one queue across tenants, least confident first, filterable by tenant, with bulk
confirm, dismiss and relabel (the crops become reference images); staff who are not superusers see their tenants only."""
from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from galleries.models import Gallery, Product, ReferenceImage
from recognition.models import DetectedObject, MatchReview, Recognition
from shitu_platform.object_store import object_store
from shitu_platform.storage import tenant_key
from tests.security.conftest import staff_client
from tests.support.images import product_photo

QUEUE = "/admin/recognition/matchreview/"


class Shelf:
    """A tenant's gallery with two products and review items on recognitions of stored photos."""

    def __init__(self, world, name: str = "Drinks") -> None:
        self.world = world
        self.tenant = world.tenant
        self.gallery = Gallery.objects.create(tenant=self.tenant, name=f"{world.tenant.name} {name}")
        self.cola = Product.objects.create(tenant=self.tenant, gallery=self.gallery, label="Red Cola")
        self.tea = Product.objects.create(tenant=self.tenant, gallery=self.gallery, label="Green Tea")

    def review(self, *, confidence: float | None, score: float = 0.5, reason: str = "low_margin", status: str = "open",
               colour: tuple[int, int, int] = (200, 40, 40)) -> MatchReview:
        public_id = uuid.uuid4()
        image_key = tenant_key(self.tenant.pk, "recognitions", "2026-01-01", str(public_id))
        object_store().put(image_key, product_photo(colour, size=(120, 160)), content_type="image/jpeg")
        recognition = Recognition.objects.create(tenant=self.tenant, gallery=self.gallery, public_id=public_id,
                                                 image_key=image_key, image_width=120, image_height=160, status="done")
        match = {"product_id": self.cola.pk, "label": self.cola.label, "display_name": "", "score": score,
                 "reference_image_id": None, "inliers": None}
        detected = DetectedObject.objects.create(
            tenant=self.tenant, recognition=recognition, rank=0, bbox=[10, 10, 110, 150], whole_image=False, det_score=0.9,
            product=self.cola, score=score, margin=0.01, confidence=confidence, matches=[match])
        return MatchReview.objects.create(tenant=self.tenant, detected_object=detected, gallery=self.gallery, reason=reason,
                                          status=status)


def _superuser_client() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", password="staff-password-1"))
    return client


def _queue(client: Client, **params) -> list[int]:
    page = client.get(QUEUE, params)
    assert page.status_code == 200
    return [review.pk for review in page.context["cl"].result_list]


def _act(client: Client, action: str, reviews: list[MatchReview], follow: bool = False, **fields):
    return client.post(QUEUE, {"action": action, "_selected_action": [review.pk for review in reviews], **fields},
                       follow=follow)


@pytest.mark.django_db
def test_one_queue_across_tenants_least_confident_first_filterable_by_tenant(tenant_a, tenant_b):
    shelf_a, shelf_b = Shelf(tenant_a), Shelf(tenant_b)
    sure_a = shelf_a.review(confidence=0.9)
    doubtful_a = shelf_a.review(confidence=0.2, reason="flagged")
    uncalibrated_b = shelf_b.review(confidence=None, score=0.4)  # no calibration: its score orders it
    middling_b = shelf_b.review(confidence=0.6)
    resolved_a = shelf_a.review(confidence=0.1, status="confirmed")
    client = _superuser_client()

    assert _queue(client) == [doubtful_a.pk, uncalibrated_b.pk, middling_b.pk, sure_a.pk]  # open items only
    assert _queue(client, status="all") == [resolved_a.pk, doubtful_a.pk, uncalibrated_b.pk, middling_b.pk, sure_a.pk]
    assert _queue(client, tenant__id__exact=tenant_b.tenant.pk) == [uncalibrated_b.pk, middling_b.pk]
    page = client.get(QUEUE).content.decode()
    assert "20%" in page and "uncalibrated" in page and tenant_b.tenant.name in page


@pytest.mark.django_db
def test_bulk_confirm_and_dismiss(tenant_a, tenant_b):
    shelf_a, shelf_b = Shelf(tenant_a), Shelf(tenant_b)
    first, second = shelf_a.review(confidence=0.3), shelf_b.review(confidence=0.4)
    thin, flagged = shelf_a.review(confidence=0.5), shelf_b.review(confidence=0.5, reason="flagged")
    client = _superuser_client()

    assert _act(client, "confirm_selected", [first, second]).status_code == 302
    for review in (first, second):
        review.refresh_from_db()
        assert (review.status, review.resolved_product_id, review.reviewed_by.username) == ("confirmed", review.detected_object.product_id, "root")

    dismissed = _act(client, "dismiss_selected", [thin, flagged, first], follow=True)
    assert "1 dismissed; 1 flagged by users or already resolved kept" in dismissed.content.decode()
    assert not MatchReview.unscoped.filter(pk=thin.pk).exists()  # the platform queued it; a person ended it
    assert MatchReview.unscoped.get(pk=flagged.pk).status == "open"  # a user's word stays
    assert MatchReview.unscoped.get(pk=first.pk).status == "confirmed"
    assert _queue(client) == [flagged.pk]


@pytest.mark.django_db
def test_bulk_relabel_makes_each_crop_a_reference_image_of_the_chosen_product(tenant_a):
    shelf = Shelf(tenant_a)
    other_gallery = Shelf(tenant_a, name="Snacks")
    first = shelf.review(confidence=0.2, colour=(40, 170, 60))
    second = shelf.review(confidence=0.3, colour=(30, 150, 70))
    elsewhere = other_gallery.review(confidence=0.1)
    client = _superuser_client()

    mixed = _act(client, "relabel_selected", [first, elsewhere], follow=True)
    assert "Relabel items of one gallery at a time" in mixed.content.decode()
    assert MatchReview.unscoped.filter(status="relabelled").count() == 0

    asked = _act(client, "relabel_selected", [first, second])
    assert asked.status_code == 200
    form = asked.content.decode()
    assert "Green Tea" in form and "Red Cola" in form and other_gallery.gallery.name not in form
    assert f"/admin/recognition/matchreview/{first.pk}/picture/crop.jpg" in form

    done = _act(client, "relabel_selected", [first, second], apply="yes", product=shelf.tea.pk, follow=True)
    assert "2 relabelled to Green Tea" in done.content.decode()
    for review in (first, second):
        review.refresh_from_db()
        assert (review.status, review.resolved_product_id) == ("relabelled", shelf.tea.pk)
        reference = review.new_reference_image
        assert (reference.product_id, reference.gallery_id) == (shelf.tea.pk, shelf.gallery.pk)
        assert (reference.width, reference.height) == (100, 140)  # the object's crop, not the whole photo
    assert ReferenceImage.unscoped.filter(product=shelf.tea).count() == 2
    assert MatchReview.unscoped.get(pk=elsewhere.pk).status == "open"

    # a product of another gallery is refused, even when posted by hand
    third = shelf.review(confidence=0.4, colour=(20, 120, 200))
    refused = _act(client, "relabel_selected", [third], apply="yes", product=other_gallery.tea.pk, follow=True)
    assert "Choose the product" in refused.content.decode()
    assert MatchReview.unscoped.get(pk=third.pk).status == "open"

    # a photo the retention sweep already removed stops the relabel with a message, not a server error
    fourth = shelf.review(confidence=0.5, colour=(120, 120, 20))
    object_store().delete(fourth.detected_object.recognition.image_key)
    stopped = _act(client, "relabel_selected", [third, fourth], apply="yes", product=shelf.tea.pk, follow=True)
    assert stopped.status_code == 200 and "Relabel stopped after 1 of 2" in stopped.content.decode()
    assert MatchReview.unscoped.get(pk=third.pk).status == "relabelled"
    assert MatchReview.unscoped.get(pk=fourth.pk).status == "open"


@pytest.mark.django_db
def test_staff_who_are_not_superusers_queue_only_their_tenants(tenant_a, tenant_b):
    shelf_a, shelf_b = Shelf(tenant_a), Shelf(tenant_b)
    own = shelf_a.review(confidence=0.5)
    foreign = shelf_b.review(confidence=0.1)
    client = staff_client(tenant_a, ["view_matchreview", "change_matchreview"])

    assert _queue(client) == [own.pk]
    page = client.get(QUEUE).content.decode()
    assert tenant_b.tenant.name not in page and shelf_b.gallery.name not in page  # nor in the tenant/gallery filters
    assert foreign.pk not in _queue(client, tenant__id__exact=tenant_b.tenant.pk)  # asking for B's items shows none
    _act(client, "confirm_selected", [own, foreign])
    _act(client, "dismiss_selected", [foreign])
    assert MatchReview.unscoped.get(pk=own.pk).status == "confirmed"
    assert MatchReview.unscoped.get(pk=foreign.pk).status == "open"  # untouched: not in this staff member's queue

    viewer = staff_client(tenant_b, ["view_matchreview"])  # may look, may not act
    assert _queue(viewer) == [foreign.pk]
    actions = viewer.get(QUEUE).context["action_form"].fields["action"].choices
    assert not {"relabel_selected", "dismiss_selected"} & {name for name, _ in actions}
