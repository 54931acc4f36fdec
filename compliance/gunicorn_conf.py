"""gunicorn settings. The access log shows the path without the query string: query strings
may carry identities, which must never reach a log."""

import os

# For a 2-core machine: a thread waiting on Redis or PostgreSQL lets another one of its
# worker run, and three workers keep both cores busy. Other layouts (2 x 8, 2 x 2, 4 x 2,
# 1 x 16, ...) measured no better (bench/README.md, consent_check).
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = 60
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
