"""The user's input file: reading CSV, Parquet and XLSX in bounded memory, validation, sharding."""
