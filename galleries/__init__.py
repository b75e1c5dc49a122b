"""Galleries: products, reference images, embeddings (pgvector) and each gallery's Faiss cache."""
