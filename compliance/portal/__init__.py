"""The customer-facing privacy portal: passwordless sign-in, the customer's own data and
conversations, reports on AI answers. Server-rendered pages that work without JavaScript."""
