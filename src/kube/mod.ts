/**
 * Talking to Kubernetes: the REST API client (`KubeClient`, kubeconfig and in-cluster credentials,
 * watches, Pod logs) and object naming. Below both src/platform (the Kubernetes platform) and
 * src/worker (light workers run each task as its own Pod), so neither imports the other for it.
 * @module
 */
export {
  KubeAlreadyExistsError,
  KubeClient,
  type KubeClientOptions,
  type KubeCredentials,
  kubeError,
  type KubeList,
  type KubeObject,
  type KubeRequestOptions,
  type KubeStatus,
  type LoadCredentialsOptions,
  loadKubeCredentials,
  parseKubeconfig,
  SERVICE_ACCOUNT_DIR,
  type WatchEvent,
} from "./kube_client.ts";
export { boundedKubeName, GPU_RESOURCE, kubeName, RDMA_RESOURCE } from "./names.ts";
