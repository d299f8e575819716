// A typed walk through the main flow: log in, create a project, submit a generation job,
// poll it to the end, then fetch the project's archive. `tsc --noEmit` checks it against
// the generated types, so a change to the API that breaks this flow fails the build.
import createClient from "openapi-fetch";

import type { components, paths } from "./devora-api-types";

export type Job = components["schemas"]["JobOut"];
export type Problem = components["schemas"]["Problem"];
export type AppSpec = components["schemas"]["AppSpec"];

const FINISHED: ReadonlyArray<Job["status"]> = ["succeeded", "failed", "canceled"];

export class ApiProblem extends Error {
  constructor(readonly problem: Problem) {
    super(`${problem.title}: ${problem.detail ?? ""}`);
  }
}

function fail(error: unknown, response: Response): never {
  // Every error body is a Problem (RFC 9457); anything else is a transport failure.
  if (error && typeof error === "object" && "type" in error) {
    throw new ApiProblem(error as Problem);
  }
  throw new Error(`HTTP ${response.status} without a problem body`);
}

function sleep(seconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
}

export interface Generated {
  job: Job;
  archive: Blob;
  archiveName: string | null;
}

export async function generateProject(baseUrl: string, email: string, password: string,
                                      spec: AppSpec): Promise<Generated> {
  const api = createClient<paths>({ baseUrl });

  const login = await api.POST("/api/v2/auth/login", { body: { email, password } });
  if (!login.data) fail(login.error, login.response);
  const token = login.data.access_token;
  api.use({
    onRequest({ request }) {
      request.headers.set("Authorization", `Bearer ${token}`);
      return request;
    },
  });

  const project = await api.POST("/api/v2/projects", { body: { name: spec.app_name } });
  if (!project.data) fail(project.error, project.response);
  const projectId = project.data.id;

  // The Idempotency-Key makes a retried submission (after a timeout, say) return the same job.
  const submitted = await api.POST("/api/v2/generate/fullstack", {
    params: { header: { "Idempotency-Key": crypto.randomUUID() } },
    body: { project_id: projectId, spec },
  });
  if (!submitted.data) fail(submitted.error, submitted.response);
  let job: Job = submitted.data;
  let retryAfter = Number(submitted.response.headers.get("Retry-After") ?? "2");
  let etag: string | undefined;

  // Poll with the ETag: while nothing changed the answer is a bodiless 304.
  while (!FINISHED.includes(job.status)) {
    await sleep(retryAfter);
    const polled = await api.GET("/api/v2/jobs/{job_id}", {
      params: { path: { job_id: job.id }, header: etag ? { "If-None-Match": etag } : {} },
    });
    retryAfter = Number(polled.response.headers.get("Retry-After") ?? "2");
    if (polled.response.status === 304) continue;
    if (!polled.data) fail(polled.error, polled.response);
    job = polled.data;
    etag = polled.response.headers.get("ETag") ?? undefined;
  }
  if (job.status !== "succeeded") {
    throw new Error(`job ${job.id} ${job.status}: ${job.error?.message ?? "no error recorded"}`);
  }

  const archive = await api.GET("/api/v2/projects/{project_id}/archive", {
    params: { path: { project_id: projectId } },
    parseAs: "blob",
  });
  if (!archive.data) fail(archive.error, archive.response);
  return { job, archive: archive.data, archiveName: archive.response.headers.get("Content-Disposition") };
}
