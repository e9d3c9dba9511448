"""Curated datasets: filters, a balance target and a seeded selection, written in synth-data's layout."""
