from django.urls import path

from compliance.api import views

urlpatterns = [
    path("conversations/", views.ConversationIngestView.as_view(), name="api-conversations"),
    path(
        "conversations/<int:conversation_id>/",
        views.ConversationDetailView.as_view(),
        name="api-conversation",
    ),
    path("sources/", views.LogSourceListView.as_view(), name="api-sources"),
    path("subjects/", views.SubjectListCreateView.as_view(), name="api-subjects"),
    path("subjects/lookup/", views.SubjectLookupView.as_view(), name="api-subject-lookup"),
    path("subjects/<uuid:subject_id>/", views.SubjectDetailView.as_view(), name="api-subject"),
]
