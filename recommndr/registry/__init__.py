"""A bundle's manifest (its files, their hashes, the signature), the artifact stores (local folder,
Azure Blob Storage) and MLflow tracking and registry. No model code: the bundle's components are
read and written by ``recommndr/bundle.py``, and ``recommndr/loading.py`` is the one loader."""
