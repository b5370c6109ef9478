from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0007_deviceprofile"),
    ]

    operations = [
        migrations.AddField(
            model_name="tableentry",
            name="stderr",
            field=models.FloatField(
                blank=True, help_text="standard error of the accuracy over its suffixes", null=True
            ),
        ),
    ]
