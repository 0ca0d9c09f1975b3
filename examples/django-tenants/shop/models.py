from django.db import models


class Order(models.Model):
    item = models.CharField(max_length=100)


class UserStatus(models.Model):
    """Added by the last migration: the table a tenant that missed it lacks."""

    user = models.CharField(max_length=100)
    online = models.BooleanField(default=False)
