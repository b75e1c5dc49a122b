"""Dashboard forms for editing galleries and products: they validate input; the writes are in galleries.services."""
from __future__ import annotations

import json
from typing import Any

from django import forms

from galleries.archive import has_control_characters
from galleries.models import Gallery, Product
from galleries.selectors import gallery_name_taken, product_label_taken


class GalleryEditForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args: Any, gallery: Gallery, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gallery = gallery

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if has_control_characters(name):
            raise forms.ValidationError("A name may not contain control characters.")
        # Names are unique per tenant; the database constraint still decides a race (the view catches it).
        if gallery_name_taken(tenant=self.gallery.tenant, name=name, exclude_pk=self.gallery.pk):
            raise forms.ValidationError(f"A gallery named “{name}” already exists.")
        return name


class ProductEditForm(forms.Form):
    """`attributes` is one `key: value` per line; values are kept as text, which is what filters compare."""

    label = forms.CharField(max_length=200)
    sku = forms.CharField(max_length=100, required=False, label="SKU")
    display_name = forms.CharField(max_length=300, required=False)
    attributes = forms.CharField(required=False, max_length=20_000, widget=forms.Textarea(attrs={"rows": 5}))

    def __init__(self, *args: Any, product: Product, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.product = product

    @classmethod
    def for_product(cls, product: Product) -> "ProductEditForm":
        return cls(product=product, initial={
            "label": product.label, "sku": product.sku, "display_name": product.display_name,
            "attributes": attributes_text(product.attributes),
        })

    def clean_label(self) -> str:
        label = self.cleaned_data["label"].strip()
        if not label:  # CharField strips too; kept for clarity should that default change
            raise forms.ValidationError("A label needs at least one visible character.")
        if has_control_characters(label):
            raise forms.ValidationError("A label may not contain control characters.")
        if product_label_taken(gallery=self.product.gallery, label=label, exclude_pk=self.product.pk):
            raise forms.ValidationError("This gallery already has a product with this label.")
        return label

    def clean_sku(self) -> str:
        return _no_control_characters(self.cleaned_data["sku"].strip(), "An SKU")

    def clean_display_name(self) -> str:
        return _no_control_characters(self.cleaned_data["display_name"].strip(), "A display name")

    def clean_attributes(self) -> dict[str, str]:
        attributes: dict[str, str] = {}
        for number, line in enumerate(self.cleaned_data["attributes"].splitlines(), start=1):
            if not line.strip():
                continue
            key, separator, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if not separator or not key:
                raise forms.ValidationError(f"Line {number}: write “key: value”.")
            if len(key) > 100:
                raise forms.ValidationError(f"Line {number}: a key is at most 100 characters.")
            if has_control_characters(key) or has_control_characters(value):
                raise forms.ValidationError(f"Line {number}: control characters are not allowed.")
            if key in attributes:
                raise forms.ValidationError(f"Line {number}: “{key}” is given twice.")
            attributes[key] = value
        return attributes


def attributes_text(attributes: dict) -> str:
    """The `key: value` lines the form shows; a value that is not text (from the API or an import) as JSON."""
    return "\n".join(f"{key}: {value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}"
                     for key, value in (attributes or {}).items())


def _no_control_characters(text: str, what: str) -> str:
    if has_control_characters(text):
        raise forms.ValidationError(f"{what} may not contain control characters.")
    return text
