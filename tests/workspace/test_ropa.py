"""The record of processing activities (GDPR Art. 30), as a page and as a CSV."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from compliance.workspace.permissions import EVERYTHING, staff_scope
from compliance.workspace.selectors import NO_TRANSFERS_RECORDED, record_of_processing
from tests.factories import (
    DataCategoryFactory,
    LogSourceFactory,
    PurposeFactory,
    RetentionPolicyFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def configured(alpha, dpo):
    contact = DataCategoryFactory(slug="contact", name="Contact details")
    health = DataCategoryFactory(slug="health", name="Health data", sensitive=True)
    orders = DataCategoryFactory(slug="orders", name="Order history")
    alpha.system.data_categories.add(contact)
    alpha.system.recipients = "Hosting provider (EU)\nCRM vendor"
    alpha.system.minimise_categories = ["payment_card"]
    alpha.system.save()
    support = PurposeFactory(slug="support", name="Customer support", lawful_basis="contract")
    support.systems.add(alpha.system)
    support.data_categories.add(orders)
    ads = PurposeFactory(
        slug="ads",
        name="Personalised offers",
        third_party_name="Ad network Ltd",
        sold_or_shared=True,
    )
    ads.systems.add(alpha.system)
    ads.data_categories.add(health)
    # A second source, under a shorter policy of its own; a third with no policy at all.
    archive = LogSourceFactory(system=alpha.system, name="archive")
    RetentionPolicyFactory(system=None, source=archive, name="Archive 30", duration_days=30)
    # Alpha's policy covers only its first source, so the third is left uncovered.
    type(alpha.policy).objects.filter(pk=alpha.policy.pk).update(
        system=None, source=alpha.source, duration_days=180
    )
    LogSourceFactory(system=alpha.system, name="zz-export")
    return alpha


def test_the_record_lists_purposes_bases_categories_recipients_and_retention(configured, beta):
    entries = {e.system.slug: e for e in record_of_processing(EVERYTHING)}
    entry = entries["alpha"]

    assert [(p.name, p.lawful_basis) for p in entry.purposes] == [
        ("Customer support", "Contract (GDPR Art. 6(1)(b))"),
        ("Personalised offers", "Consent (GDPR Art. 6(1)(a))"),
    ]
    assert entry.data_categories == ["Contact details", "Health data", "Order history"]
    assert entry.sensitive_categories == ["Health data"]
    assert entry.recipients == ["Hosting provider (EU)", "CRM vendor", "Ad network Ltd"]
    assert entry.transfers == NO_TRANSFERS_RECORDED
    retention = {r.source: (r.policy, r.days) for r in entry.retention}
    assert retention == {
        "alpha-logs": ("Alpha policy", 180),
        "archive": ("Archive 30", 30),
        "zz-export": ("", None),
    }
    assert entry.retention_gaps == 1
    assert entry.subject_categories == ["Customers who talk to the AI assistant (EU)"]
    assert any("Payment card" in m or "payment" in m.lower() for m in entry.security_measures)
    assert set(entries) == {"alpha", "beta"}


def test_the_record_holds_only_the_users_systems(configured, people):
    entries = record_of_processing(staff_scope(people.beta_actor))
    assert [e.system.slug for e in entries] == ["beta"]


def test_the_csv_has_a_row_per_system_and_purpose(signed_in, dpo, configured, beta):
    response = signed_in(dpo).get(reverse("workspace:ropa-csv"))

    assert response.status_code == 200
    assert "record-of-processing-" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    alpha_rows = [r for r in rows if r["system_slug"] == "alpha"]
    assert [r["purpose"] for r in alpha_rows] == ["Customer support", "Personalised offers"]
    assert alpha_rows[0]["recipients"] == "Hosting provider (EU); CRM vendor; Ad network Ltd"
    assert "zz-export: no retention policy" in alpha_rows[0]["retention"]
    assert "archive: 30 days, then delete the records (Archive 30)" in alpha_rows[0]["retention"]
    beta_rows = [r for r in rows if r["system_slug"] == "beta"]
    assert len(beta_rows) == 1 and beta_rows[0]["purpose"] == ""


def test_a_csv_cell_that_a_spreadsheet_would_run_is_defused(signed_in, dpo, alpha):
    alpha.system.recipients = '=HYPERLINK("http://evil")'
    alpha.system.save()
    response = signed_in(dpo).get(reverse("workspace:ropa-csv"))
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert rows[0]["recipients"].startswith("'=")


def test_the_page_flags_a_source_without_a_policy(signed_in, dpo, configured):
    response = signed_in(dpo).get(reverse("workspace:ropa"))
    page = response.content.decode()
    assert response.status_code == 200
    assert "no retention policy: kept without limit" in page
    assert "Personalised offers" in page
