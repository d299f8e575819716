"""Every blueprint the app registers, in one list."""
from web.blueprints import auth, health, projects

BLUEPRINTS = [health.bp, auth.bp, projects.bp]
