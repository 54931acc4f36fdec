"""GET /discovery and the processor certificate it names (OpenDSR section 6)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from rest_framework.test import APIClient

from integrations.opendsr.signing import processor_domain, signature_verify
from tests.integrations.opendsr.conftest import published_certificate

pytestmark = pytest.mark.django_db

FORMATS = ["raw", "sha1", "md5", "sha256"]


def test_discovery_lists_every_field_of_the_specification_without_an_api_key():
    response = APIClient().get("/opendsr/v2/discovery")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {
        "api_version",
        "supported_identities",
        "supported_subject_request_types",
        "processor_certificate",
    }
    assert body["api_version"] == "2.0"
    assert body["supported_subject_request_types"] == ["access", "portability", "erasure"]
    assert body["supported_identities"] == [
        {"identity_type": identity_type, "identity_format": identity_format}
        for identity_type in ("controller_customer_id", "email", "phone_number")
        for identity_format in FORMATS
    ]
    # The certificate is on the same domain as the discovery endpoint (section 6.3).
    assert body["processor_certificate"] == "http://testserver/opendsr/v2/certificate.pem"


def test_the_trailing_slash_is_optional():
    assert APIClient().get("/opendsr/v2/discovery/").status_code == 200


def test_the_published_certificate_is_issued_to_the_processor_domain():
    pem = published_certificate(APIClient())
    certificate = x509.load_pem_x509_certificate(pem)
    common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert common_name == processor_domain()
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert processor_domain() in names.get_values_for_type(x509.DNSName)


def test_the_discovery_answer_itself_is_signed_with_the_published_certificate():
    client = APIClient()
    response = client.get("/opendsr/v2/discovery")
    pem = published_certificate(client)
    assert response["X-OpenDSR-Processor-Domain"] == processor_domain()
    assert signature_verify(
        certificate_pem=pem, body=response.content, signature=response["X-OpenDSR-Signature"]
    )
    assert response["X-OpenGDPR-Signature"] == response["X-OpenDSR-Signature"]
    assert response["X-OpenGDPR-Processor-Domain"] == processor_domain()


def test_the_v1_discovery_names_version_1_and_its_own_certificate_url():
    body = APIClient().get("/opengdpr/v1/discovery").json()
    assert body["api_version"] == "1.0"
    assert body["processor_certificate"] == "http://testserver/opengdpr/v1/certificate.pem"
    assert published_certificate(APIClient(), discovery="/opengdpr/v1/discovery") == (
        published_certificate(APIClient())
    )


def test_without_a_configured_key_production_answers_503_in_the_opendsr_shape(settings):
    settings.OPENDSR_GENERATE_CERTIFICATE = False
    settings.OPENDSR_PRIVATE_KEY = ""
    settings.OPENDSR_CERTIFICATE = ""
    response = APIClient().get("/opendsr/v2/certificate.pem")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == 503
    assert "OPENDSR_PRIVATE_KEY" in error["message"]
    assert error["errors"] == [
        {"domain": "Service", "reason": "signing_unavailable", "message": error["message"]}
    ]


def test_a_configured_key_and_certificate_are_used_and_a_mismatched_pair_is_refused(
    settings, tmp_path
):
    from integrations.opendsr.signing import _generate

    first = _generate("privacy.example.com").decode()
    second = _generate("privacy.example.com").decode()
    key_pem = first.split("-----BEGIN CERTIFICATE-----")[0]
    certificate_pem = "-----BEGIN CERTIFICATE-----" + first.split("-----BEGIN CERTIFICATE-----")[1]
    other_certificate = (
        "-----BEGIN CERTIFICATE-----" + second.split("-----BEGIN CERTIFICATE-----")[1]
    )
    settings.OPENDSR_GENERATE_CERTIFICATE = False
    settings.OPENDSR_PROCESSOR_DOMAIN = "privacy.example.com"
    settings.OPENDSR_PRIVATE_KEY = key_pem
    settings.OPENDSR_CERTIFICATE = certificate_pem
    response = APIClient().get("/opendsr/v2/certificate.pem")
    assert response.status_code == 200
    assert response.content == certificate_pem.encode()

    settings.OPENDSR_CERTIFICATE = other_certificate
    response = APIClient().get("/opendsr/v2/certificate.pem")
    assert response.status_code == 503
    assert "not the certificate of the key" in response.json()["error"]["message"]
