"""Every blueprint the app registers, in one list."""
from web.blueprints import admin, auth, billing, events, generation, health, jobs, oauth, projects, webhooks

BLUEPRINTS = [health.bp, auth.bp, oauth.bp, projects.bp, generation.bp, jobs.bp, events.bp, billing.bp, webhooks.bp,
              admin.bp]
