"""Code shared by the web app and the workers: settings, database, domain logic."""
