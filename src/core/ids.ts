/** Identifiers. Plain strings so that logs, JSON and config read naturally. */
export type InstanceId = string;
export type RequestId = string;
export type TenantId = string;
export type ModelId = string;
export type GpuId = string;
