"""Input forms of the portal. They check shape only; the services decide."""

from __future__ import annotations

from django import forms
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _

from compliance.models import AnswerFlagCategory
from compliance.portal.services import CODE_DIGITS, MAX_COMMENT_CHARS


class SignInForm(forms.Form):
    identity = forms.CharField(
        label=_("Your email address or phone number"),
        help_text=_(
            "Use the one you gave when you chatted with us. For a phone number, start with "
            "your country code, for example +44."
        ),
        max_length=320,
        widget=forms.TextInput(attrs={"autocomplete": "email", "spellcheck": "false"}),
    )


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Sign-in code"),
        help_text=_("The 6 digits from the message we sent."),
        max_length=20,
        validators=[
            RegexValidator(
                rf"^\s*(\d\s*){{{CODE_DIGITS}}}$",
                _("The code is 6 digits."),
            )
        ],
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "spellcheck": "false"}
        ),
    )


class AnswerFlagForm(forms.Form):
    category = forms.ChoiceField(
        label=_("What is wrong with this answer?"),
        choices=AnswerFlagCategory.choices,
        widget=forms.RadioSelect,
    )
    comment = forms.CharField(
        label=_("Tell us more (optional)"),
        help_text=_("A person will read this. Up to 2000 characters."),
        required=False,
        max_length=MAX_COMMENT_CHARS,
        widget=forms.Textarea(attrs={"rows": 3, "data-counter": str(MAX_COMMENT_CHARS)}),
    )
