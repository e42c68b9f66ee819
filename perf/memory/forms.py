"""Forms of the memory page."""

from __future__ import annotations

from django import forms

from perf.memory.services import MAX_FRAMES, MAX_WINDOW_MINUTES


class TracemallocWindowForm(forms.Form):
    action = forms.ChoiceField(choices=[("open", "open"), ("close", "close")])
    minutes = forms.IntegerField(min_value=1, max_value=MAX_WINDOW_MINUTES, required=False, initial=15)
    frames = forms.IntegerField(min_value=1, max_value=MAX_FRAMES, required=False, initial=1)
