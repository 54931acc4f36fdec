from django.urls import path

from compliance.portal import views, views_privacy, views_requests

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("portal/sign-in/", views.sign_in, name="sign_in"),
    path("portal/sign-in/code/", views.sign_in_code, name="sign_in_code"),
    path("portal/sign-in/new-code/", views.sign_in_resend, name="sign_in_resend"),
    path("portal/sign-out/", views.sign_out, name="sign_out"),
    path("portal/conversations/", views.conversation_list, name="conversations"),
    path(
        "portal/conversations/<int:conversation_id>/",
        views.conversation_detail,
        name="conversation",
    ),
    path(
        "portal/conversations/<int:conversation_id>/answers/<int:message_id>/report/",
        views.answer_flag,
        name="answer_flag",
    ),
    # Privacy choices (the consent app's services).
    path("portal/privacy-choices/", views_privacy.privacy_choices, name="privacy_choices"),
    path(
        "portal/privacy-choices/purposes/<slug:slug>/",
        views_privacy.privacy_choice_set,
        name="privacy_choice",
    ),
    path(
        "portal/privacy-choices/receipts/<uuid:receipt_id>/",
        views_privacy.consent_receipt,
        name="consent_receipt",
    ),
    path("portal/privacy-choices/<slug:which>/", views_privacy.ccpa_opt_out, name="ccpa_opt_out"),
    # Requests (the DSAR app's services).
    path("portal/requests/", views_requests.request_list, name="requests"),
    path("portal/requests/new/", views_requests.request_new, name="request_new"),
    path("portal/requests/<uuid:request_id>/", views_requests.request_detail, name="request"),
    path(
        "portal/requests/<uuid:request_id>/verify/",
        views_requests.request_verify,
        name="request_verify",
    ),
    path(
        "portal/requests/<uuid:request_id>/new-code/",
        views_requests.request_code_resend,
        name="request_code_resend",
    ),
    path(
        "portal/requests/<uuid:request_id>/export/",
        views_requests.request_export,
        name="request_export",
    ),
    path(
        "portal/requests/<uuid:request_id>/certificate/",
        views_requests.request_certificate,
        name="request_certificate",
    ),
]
