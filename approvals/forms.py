"""The forms approvers fill in: the words that go with a decision, bounded and, to reject, required."""

from __future__ import annotations

from django import forms

TEXT_MAX_LENGTH = 4000  # a justification is a few sentences; the bound keeps rows and notifications small
REASON_REQUIRED = "A reason is required to reject a request."


class JustificationForm(forms.Form):
    """The bulk actions' second page: one text for every selected request."""

    justification = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        required=False,
        max_length=TEXT_MAX_LENGTH,
        help_text="Why. Required to approve high and critical requests.",
    )


class ReasonForm(JustificationForm):
    justification = forms.CharField(
        label="Reason",
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        max_length=TEXT_MAX_LENGTH,
        error_messages={"required": REASON_REQUIRED},
        help_text="Why not. The agent and the audit trail see it.",
    )


class DecisionForm(forms.Form):
    """The buttons on a request's page: which decision, and the words that go with it."""

    decision = forms.ChoiceField(choices=[("approve", "approve"), ("reject", "reject"), ("escalate", "escalate")])
    text = forms.CharField(required=False, max_length=TEXT_MAX_LENGTH, strip=True)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("decision") == "reject" and not cleaned.get("text"):
            raise forms.ValidationError(REASON_REQUIRED, code="reason_required")
        return cleaned
