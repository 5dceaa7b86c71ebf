"""Published models and guidelines as pure, typed functions (shared/reference/clinical-models.md)."""
