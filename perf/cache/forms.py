"""Forms behind the cache page's actions."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from perf.cache.base import normalize_tags


class InvalidateTagForm(forms.Form):
    tag = forms.CharField(max_length=200, help_text="For example users, user:42 or stats.")

    def clean_tag(self) -> str:
        tag = self.cleaned_data["tag"].strip()
        try:
            normalize_tags([tag])
        except (TypeError, ValueError) as error:
            raise ValidationError(str(error)) from None
        return tag


class InvalidatePatternForm(forms.Form):
    pattern = forms.CharField(max_length=200, help_text="A glob over cache keys, for example users:list:*.")
    confirm = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def clean_pattern(self) -> str:
        pattern = self.cleaned_data["pattern"].strip()
        if any(ch.isspace() for ch in pattern):
            raise ValidationError("A pattern has no spaces or line breaks.")
        if pattern.startswith("_cache:"):
            raise ValidationError("Keys under _cache: are the cache's own stamps, locks and metrics.")
        return pattern
