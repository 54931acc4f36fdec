"""Digests of every identity (sha256, sha1, md5 of the normalized value), so a request that
names a person only by a digest (OpenDSR identity_format) is matched through an index."""

import hashlib

from django.db import migrations, models

BATCH = 2000
COLUMNS = {"sha256": "value_sha256", "sha1": "value_sha1", "md5": "value_md5"}


def fill_digests(apps, schema_editor):
    # The historical model has no custom save(): compute here what the model computes.
    SubjectIdentity = apps.get_model("compliance", "SubjectIdentity")
    last_pk = 0
    while True:
        rows = list(
            SubjectIdentity.objects.filter(pk__gt=last_pk)
            .order_by("pk")
            .only("pk", "value")[:BATCH]
        )
        if not rows:
            return
        for row in rows:
            raw = row.value.encode()
            for algorithm, column in COLUMNS.items():
                setattr(row, column, hashlib.new(algorithm, raw, usedforsecurity=False).hexdigest())
        SubjectIdentity.objects.bulk_update(rows, list(COLUMNS.values()))
        last_pk = rows[-1].pk


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0004_retention"),
    ]

    operations = [
        migrations.AddField(
            model_name="subjectidentity",
            name="value_md5",
            field=models.CharField(default="", editable=False, max_length=32),
        ),
        migrations.AddField(
            model_name="subjectidentity",
            name="value_sha1",
            field=models.CharField(default="", editable=False, max_length=40),
        ),
        migrations.AddField(
            model_name="subjectidentity",
            name="value_sha256",
            field=models.CharField(default="", editable=False, max_length=64),
        ),
        migrations.RunPython(fill_digests, migrations.RunPython.noop, elidable=False),
        migrations.AddIndex(
            model_name="subjectidentity",
            index=models.Index(fields=["type", "value_sha256"], name="identity_type_sha256_idx"),
        ),
        migrations.AddIndex(
            model_name="subjectidentity",
            index=models.Index(fields=["type", "value_sha1"], name="identity_type_sha1_idx"),
        ),
        migrations.AddIndex(
            model_name="subjectidentity",
            index=models.Index(fields=["type", "value_md5"], name="identity_type_md5_idx"),
        ),
    ]
