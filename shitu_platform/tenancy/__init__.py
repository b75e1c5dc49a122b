"""Tenancy: tenants, memberships with roles, API keys, and the single scoping path for tenant data."""
