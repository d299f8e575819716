"""Every blueprint the app registers, in one list."""
from web.blueprints import auth, generation, health, jobs, projects

BLUEPRINTS = [health.bp, auth.bp, projects.bp, generation.bp, jobs.bp]
