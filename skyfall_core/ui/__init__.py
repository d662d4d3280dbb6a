"""Helpers shared by the Streamlit pages (cached singletons, catalog access)."""
