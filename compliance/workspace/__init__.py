"""The DPO workspace: per-system staff permissions, the accountability pages (dashboard,
CCPA §7102 metrics, the GDPR Art. 30 record, flagged-answer statistics, the audit chain
check) and the admin mixin that scopes every list, page and action to the systems a
member of the privacy staff was granted. See docs/workspace.md."""
