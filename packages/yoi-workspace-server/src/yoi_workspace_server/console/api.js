// The Backend's /api, same origin only, with the session cookie. A 401 anywhere asks the app
// for the sign-in form (the current view, composer text included, stays as it is).

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

export async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network_error', 'the Backend cannot be reached', {});
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    if (response.status === 401) window.dispatchEvent(new CustomEvent('yoi:unauthorized'));
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || response.statusText || 'request failed',
      error.details,
    );
  }
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body === undefined ? {} : body);
export const del = (path) => api('DELETE', path);

export function errorText(error) {
  if (error instanceof ApiError) {
    const reason = error.details && error.details.reason ? ` (${error.details.reason})` : '';
    return `${error.code}: ${error.message}${reason}`;
  }
  return String(error && error.message ? error.message : error);
}
