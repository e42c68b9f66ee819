# One result per server and job: a queue job retried after its worker died resumes
# without recording an item twice.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("containers", "0005_secrets_encrypted"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="batchjobresult",
            constraint=models.UniqueConstraint(fields=("job", "server"), name="containers_result_one_per_server"),
        ),
    ]
