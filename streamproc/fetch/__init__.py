"""Downloads of finished recordings: S3 in, a verified copy in the sink out."""
